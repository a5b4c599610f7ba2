"""The life of a run: creating it, its supervisor, watching it, the queue, settling it.

`state` is the one owner of run state: every status change of every run happens there.
(Not named `runs`: `btmanager.runs(...)` is the notebook API's function.)
"""

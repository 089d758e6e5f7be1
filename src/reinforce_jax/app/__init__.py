"""The application layer: the only code that prints or writes files.

``session`` records a trainer's events into a run directory (``rundir``), sinks (TensorBoard,
W&B, a progress bar) and console lines; ``plots`` and ``video`` draw and record; ``cli`` is the
``reinforce`` command.
"""

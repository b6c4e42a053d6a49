"""Solver backends behind one protocol (``base.Solver``): ``rattler`` through py-rattler
(``solvers/rattler.py``) and ``libmamba`` through conda (``conda_unsloth/conda/solver.py``,
only inside conda). The runtime names the backends it has (``Runtime.solver``)."""

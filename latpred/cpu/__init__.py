"""CPU side of "what the runtime really executes": ops XNNPACK folds into a neighbour."""
from .fusion import folded_ops, runtime_folds

__all__ = ["folded_ops", "runtime_folds"]

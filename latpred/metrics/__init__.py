"""Decisions from latency: FRM (compound efficiency, seed 001), cross-scenario rank transfer and
proxy selection (MonoNAS, seed 004), and latency-constrained selection errors (BRP-NAS §S1.3)."""
from .frm import format_frm_table, frm_scores, frm_table, model_costs, pareto_front, spearman
from .selection import selection_at_limit, selection_curve
from .transfer import pareto_transfer, select_proxy, srcc_matrix

__all__ = ["frm_table", "format_frm_table", "frm_scores", "model_costs", "pareto_front", "spearman",
           "srcc_matrix", "select_proxy", "pareto_transfer", "selection_at_limit",
           "selection_curve"]

"""Figures (``figures``) and the statistics they draw (``statistics``)."""

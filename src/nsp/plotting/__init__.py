"""Drawing: figures (``figures``) and pages of one sample (``pages``); the statistics they draw are
:mod:`nsp.statistics`."""

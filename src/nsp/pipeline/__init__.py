"""The pipeline: the ``nsp`` command line (``cli``) and its stages (``stages``, one registered function each),
the config (``config``), figure kinds (``figures``), dataset sources (``datasets``), training, batch sizes
(``batching``) and the resources each job asks for (``resources``)."""

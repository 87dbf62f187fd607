"""The neuron graph as arrays: the graph core (layer table, connectivity blocks, edge weights, CSR),
its edge-weight assembly and its channel symmetry."""

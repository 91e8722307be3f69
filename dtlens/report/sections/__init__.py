"""One module per finding of the MemoryDT post; each has ``run(model, config) -> Section``."""

"""Data: raw-layout readers, label unification, SynthDrivers, the prepare step and loaders."""

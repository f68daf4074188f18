"""The ground floor for files, importable by every layer: one lock, one atomic write, and the
names of the files a run leaves behind."""

"""Tokenisation, prompt templates, the teacher store, and the LightningDataModules."""

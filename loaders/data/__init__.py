"""Data stage: catalog → snapshot → load guard → stream COPY → sequences → verify."""

"""Internal core shared by every method: data, graphs, networks, objectives, engine, storage."""

"""The embedding cube: entities living in several embedding spaces, FAISS-backed indices,
relationships, hierarchies and transforms between spaces."""

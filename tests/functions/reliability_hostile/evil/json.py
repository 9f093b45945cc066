# Shadows the standard json module for any Python that puts evil/ first on its path.
print("EVIL json imported")
raise ImportError("evil json")

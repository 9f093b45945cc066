# Imported at start-up by any Python that puts evil/ on its path (PYTHONPATH, PYTHONHOME).
print("EVIL sitecustomize imported")

# PYTHONSTARTUP: run by an interactive Python (PYTHONINSPECT makes any Python interactive).
print("EVIL startup ran")

print("Tensors: not yet implemented")

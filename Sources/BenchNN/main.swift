print("BenchNN: not yet implemented")

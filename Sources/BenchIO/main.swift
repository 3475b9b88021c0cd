print("BenchIO: not yet implemented")

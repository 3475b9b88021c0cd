print("Synthesize: not yet implemented")

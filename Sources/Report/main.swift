print("report: not yet implemented")

@_exported import SeededRNG

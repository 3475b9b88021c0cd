public enum Subspace {}

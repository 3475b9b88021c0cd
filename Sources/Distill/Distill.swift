public enum Distill {}

public enum Extraction {}

public enum Training {}

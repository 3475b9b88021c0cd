public enum ShapesWorld {}

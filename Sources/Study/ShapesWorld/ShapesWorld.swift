import SeededRNG

/// The synthetic image world of the study (docs/protocol.md, "Synthetic world"):
/// 20 classes of parametric shapes in 4 families of 5. The class id is
/// `family index · 5 + member`, families in the order stars, polygons,
/// gratings, dots. Everything else (position, size, rotation, colours,
/// stroke width, background, clutter, noise) is drawn independently of the
/// class, so only the shape carries the label.
public enum ShapesWorld {
    /// Families in class-id order.
    public static let families: [Family] = Family.allCases

    /// Members per family.
    public static let membersPerFamily = 5

    /// Number of classes of the world (20).
    public static var classCount: Int { families.count * membersPerFamily }

    /// Class names indexed by class id.
    public static let classNames: [String] = Family.allCases.flatMap { $0.memberNames }

    /// The glyph family of the digit-aware teacher world: class
    /// `classCount + g` (20–24) is glyph g, labelled by the corner digit g.
    public static let glyphClassCount = 5

    /// Names of the glyph classes (glyph0..glyph4).
    public static let glyphClassNames: [String] = (0..<glyphClassCount).map { "glyph\($0)" }

    /// Global ids of the glyph classes (20..<25).
    public static var glyphClassIDs: Range<Int> { classCount..<(classCount + glyphClassCount) }

    /// The image side the nuisance ranges of the issue are given for; other
    /// sizes scale every length by `size / referenceSize`.
    public static let referenceSize = 32
}

/// A family of five classes that differ in one shape parameter.
public enum Family: String, CaseIterable, Sendable {
    /// A star or cross with n arms, n ∈ {3, 4, 5, 6, 8}.
    case stars
    /// A regular polygon with n sides, n ∈ {3, 4, 5, 6}, and a circle.
    case polygons
    /// A disc of sinusoidal stripes at 0°, 36°, 72°, 108° or 144°.
    case gratings
    /// A cluster of n dots, n ∈ {1, ..., 5}.
    case dots

    public var index: Int { Family.allCases.firstIndex(of: self)! }

    /// Global class ids of the members, in member order.
    public var classIDs: [Int] { (0..<ShapesWorld.membersPerFamily).map { index * ShapesWorld.membersPerFamily + $0 } }

    /// The class parameter of each member (arms, sides with 0 for the
    /// circle, orientation in degrees, dots).
    public var memberParameters: [Int] {
        switch self {
        case .stars: return [3, 4, 5, 6, 8]
        case .polygons: return [3, 4, 5, 6, 0]
        case .gratings: return [0, 36, 72, 108, 144]
        case .dots: return [1, 2, 3, 4, 5]
        }
    }

    public var memberNames: [String] {
        switch self {
        case .stars: return memberParameters.map { "star\($0)" }
        case .polygons: return ["triangle", "square", "pentagon", "hexagon", "circle"]
        case .gratings: return memberParameters.map { "grating\($0)" }
        case .dots: return memberParameters.map { "dots\($0)" }
        }
    }
}

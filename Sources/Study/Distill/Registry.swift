import Subspace

/// Every distillation method `distill` knows, in the order `--list-methods`,
/// `--help` and the tests show them. Adding a method: one type in
/// `Methods/` conforming to `DistillationMethod`, and one line here.
public enum MethodRegistry {
    public static let all: [any DistillationMethod] = [
        LogitDistillation.labelOnly,
        LogitDistillation.kd,
        LogitDistillation.kdCE,
        FitNet(relu: true),
        FitNet(relu: false),
        AttentionTransfer(),
        VID(),
        VkD(),
        SPKD(),
        DKD(),
        RKD(),
        SubDistill(basis: .prcaposdef),
        SubDistill(basis: .pca),
        SubDistill(basis: .gradpca),
        SubDistill(basis: .prca),
        SubDistill(basis: .random),
    ]

    /// The registered names, in order.
    public static var names: [String] { all.map(\.name) }

    public static func method(named name: String) -> DistillMethod? {
        all.first { $0.name == name }.map(DistillMethod.init)
    }
}

/// The logit-only methods, which differ only in the weights of the trainer's
/// two logit terms (docs/methods.md, "label-only, kd, kd+ce"):
///
///     label-only   L = CE(z_s, y)                                  no teacher
///     kd           L = T² · KL(softmax(z_t/T) ‖ softmax(z_s/T))   no labels (Hinton et al. 2015)
///     kd+ce        L = CE(z_s, y) + T² · KL(…)                     Hinton et al.'s form with labels
public struct LogitDistillation: DistillationMethod {
    public let name: String
    public let summary: String
    public let defaults: MethodDefaults

    public static let labelOnly = LogitDistillation(
        name: "label-only", summary: "cross-entropy on the labels alone, no teacher (baseline)",
        defaults: MethodDefaults(lambdaTask: 1, lambdaKD: 0, usesTeacher: false, usesLabels: true))
    public static let kd = LogitDistillation(
        name: "kd", summary: "T^2 KL between teacher and student soft targets at T = 4, no labels (Hinton et al. 2015)",
        defaults: MethodDefaults())
    public static let kdCE = LogitDistillation(
        name: "kd+ce", summary: "KD plus cross-entropy on the labels (Hinton et al. 2015)",
        defaults: MethodDefaults(lambdaTask: 1, usesLabels: true))
}

import NN
import StageKit

/// Applies `Augmentation` to a batch in place, with a reused scratch copy.
///
/// Random crop with padding p (torchvision `RandomCrop(size, padding=p)`):
/// the image is padded by p pixels of raw intensity 0 (black) on every side
/// and a window of the original size is cut at a uniform offset, i.e.
///
///     out(y, x) = in(y + dy, x + dx)  if inside, else black,   dy, dx ∈ {−p, …, p}
///
/// then (`flip`) out(y, x) ← out(y, W − 1 − x) with probability ½. Draws per
/// image, in order: dy, dx (crop), then the flip bit (flip), so a run's
/// augmentation depends only on its generator.
final class BatchAugmenter {
    let augmentation: Augmentation
    /// Normalised value of a black pixel: (0 − mean)/scale.
    let padValue: Float = (0 - Dataset.pixelMean) / Dataset.pixelScale
    private var scratch: [Float] = []

    init(_ augmentation: Augmentation) { self.augmentation = augmentation }

    // batch: B×H×W×C, modified in place.
    func apply(_ batch: inout Tensor, rng: inout RNG) {
        guard augmentation.isOn, batch.rank == 4 else { return }
        let b = batch.shape[0], h = batch.shape[1], w = batch.shape[2], c = batch.shape[3]
        let p = augmentation.crop ? augmentation.cropPadding : 0
        let per = h * w * c
        if scratch.count != batch.count { scratch = [Float](repeating: 0, count: batch.count) }
        let pad = padValue
        // Draw every image's transform first (cheap), then move pixels.
        var dys = [Int](repeating: 0, count: b), dxs = [Int](repeating: 0, count: b)
        var flips = [Bool](repeating: false, count: b)
        for i in 0..<b {
            if augmentation.crop {
                dys[i] = rng.int(below: 2 * p + 1) - p
                dxs[i] = rng.int(below: 2 * p + 1) - p
            }
            if augmentation.flip { flips[i] = rng.next() >> 63 == 1 }
        }
        batch.data.withUnsafeMutableBufferPointer { out in
            scratch.withUnsafeMutableBufferPointer { src in
                src.baseAddress!.update(from: out.baseAddress!, count: out.count)
                for i in 0..<b {
                    let base = i * per
                    let dy = dys[i], dx = dxs[i], flip = flips[i]
                    for y in 0..<h {
                        let sy = y + dy
                        for x in 0..<w {
                            // Crop first, then mirror the cropped image.
                            let cx = flip ? w - 1 - x : x
                            let sx = cx + dx
                            let o = base + (y * w + x) * c
                            if sy < 0 || sy >= h || sx < 0 || sx >= w {
                                for k in 0..<c { out[o + k] = pad }
                            } else {
                                let s = base + (sy * w + sx) * c
                                for k in 0..<c { out[o + k] = src[s + k] }
                            }
                        }
                    }
                }
            }
        }
    }
}

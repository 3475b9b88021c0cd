import Foundation

// A small SVG builder, enough for the report's figures: panels with line
// charts (error bars, reference lines) or scatter plots (labelled points),
// axes with "nice" ticks, and a legend. No dependency; output is
// byte-deterministic (attributes in a fixed order, numbers printed with a
// fixed number of decimals).

// MARK: - Document

/// An SVG document assembled element by element.
public struct SVGDocument {
    public let width: Double
    public let height: Double
    private var lines: [String] = []
    private var depth = 1

    public init(width: Double, height: Double) {
        self.width = width
        self.height = height
    }

    /// Opens a container element (e.g. `g`); close it with `close(_:)`.
    public mutating func open(_ tag: String, _ attributes: [(String, String)] = []) {
        lines.append(indent + "<\(tag)\(SVGDocument.attributeString(attributes))>")
        depth += 1
    }

    public mutating func close(_ tag: String) {
        depth -= 1
        lines.append(indent + "</\(tag)>")
    }

    /// A leaf element, optionally with text content (escaped here).
    public mutating func element(_ tag: String, _ attributes: [(String, String)], text: String? = nil) {
        if let text {
            lines.append(indent + "<\(tag)\(SVGDocument.attributeString(attributes))>\(escapeXML(text))</\(tag)>")
        } else {
            lines.append(indent + "<\(tag)\(SVGDocument.attributeString(attributes))/>")
        }
    }

    public mutating func line(_ x1: Double, _ y1: Double, _ x2: Double, _ y2: Double,
                              stroke: String, width: Double = 1, dash: String? = nil, cssClass: String? = nil) {
        var a: [(String, String)] = [("x1", fmt(x1)), ("y1", fmt(y1)), ("x2", fmt(x2)), ("y2", fmt(y2)),
                                     ("stroke", stroke), ("stroke-width", fmt(width))]
        if let dash { a.append(("stroke-dasharray", dash)) }
        if let cssClass { a.append(("class", cssClass)) }
        element("line", a)
    }

    public mutating func text(_ s: String, x: Double, y: Double, size: Double = 12, anchor: String = "start",
                              weight: String? = nil, fill: String = "#222222", rotate: Double? = nil,
                              halo: Bool = false, cssClass: String? = nil) {
        var a: [(String, String)] = [("x", fmt(x)), ("y", fmt(y)), ("font-size", fmt(size)), ("text-anchor", anchor),
                                     ("fill", fill)]
        // A white outline under the glyphs keeps text readable where it crosses lines.
        if halo { a += [("stroke", "#ffffff"), ("stroke-width", "3"), ("stroke-linejoin", "round"), ("paint-order", "stroke")] }
        if let weight { a.append(("font-weight", weight)) }
        if let rotate { a.append(("transform", "rotate(\(fmt(rotate)) \(fmt(x)) \(fmt(y)))")) }
        if let cssClass { a.append(("class", cssClass)) }
        element("text", a, text: s)
    }

    /// The complete document, newline-terminated.
    public func render() -> String {
        var out = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        out += "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(fmt(width))\" height=\"\(fmt(height))\" "
        out += "viewBox=\"0 0 \(fmt(width)) \(fmt(height))\" font-family=\"Helvetica, Arial, sans-serif\">\n"
        out += "  <rect x=\"0\" y=\"0\" width=\"\(fmt(width))\" height=\"\(fmt(height))\" fill=\"#ffffff\"/>\n"
        for l in lines { out += l + "\n" }
        out += "</svg>\n"
        return out
    }

    private var indent: String { String(repeating: "  ", count: max(depth, 0)) }

    static func attributeString(_ a: [(String, String)]) -> String {
        a.map { " \($0.0)=\"\(escapeXML($0.1))\"" }.joined()
    }
}

/// Escapes text for XML content and attribute values.
public func escapeXML(_ s: String) -> String {
    var out = ""
    out.reserveCapacity(s.count)
    for ch in s {
        switch ch {
        case "&": out += "&amp;"
        case "<": out += "&lt;"
        case ">": out += "&gt;"
        case "\"": out += "&quot;"
        case "'": out += "&apos;"
        default: out.append(ch)
        }
    }
    return out
}

/// Coordinates with two decimals, trailing zeros trimmed: small files, stable bytes.
func fmt(_ v: Double) -> String {
    guard v.isFinite else { return "0" }
    var s = String(format: "%.2f", v)
    while s.hasSuffix("0") { s.removeLast() }
    if s.hasSuffix(".") { s.removeLast() }
    return s == "-0" ? "0" : s
}

/// Rough width of a text in pixels (sans-serif averages about 0.56 em per character);
/// used only for layout, so overestimating is safe.
func textWidth(_ s: String, size: Double) -> Double { Double(s.count) * size * 0.58 }

// MARK: - Scales and ticks

/// Affine map from a data interval onto a pixel interval.
public struct LinearScale {
    public var domain: (Double, Double)
    public var range: (Double, Double)
    public init(domain: (Double, Double), range: (Double, Double)) {
        self.domain = domain
        self.range = range
    }
    public func map(_ v: Double) -> Double {
        let span = domain.1 - domain.0
        if span == 0 { return (range.0 + range.1) / 2 }
        return range.0 + (v - domain.0) / span * (range.1 - range.0)
    }
}

/// "Nice" ticks covering [lo, hi]: steps of 1, 2 or 5 × 10^k, at most about `maxTicks` of them.
public func niceTicks(_ lo: Double, _ hi: Double, maxTicks: Int = 6) -> [Double] {
    guard lo.isFinite, hi.isFinite else { return [] }
    if hi <= lo { return [lo] }
    let rough = (hi - lo) / Double(max(maxTicks - 1, 1))
    let mag = pow(10, floor(log10(rough)))
    let step = [1.0, 2.0, 5.0, 10.0].map { $0 * mag }.first { $0 >= rough * (1 - 1e-9) } ?? 10 * mag
    let first = ceil(lo / step - 1e-9) * step
    var ticks: [Double] = []
    var t = first
    while t <= hi + step * 1e-9 {
        ticks.append(abs(t) < step * 1e-9 ? 0 : t)
        t += step
    }
    return ticks
}

/// A domain widened outwards to whole nice steps (so the axis ends on a tick).
public func niceDomain(_ lo: Double, _ hi: Double, maxTicks: Int = 6) -> (Double, Double) {
    if !(lo.isFinite && hi.isFinite) { return (0, 1) }
    if hi <= lo { return lo == 0 ? (0, 1) : (lo - abs(lo) * 0.1, lo + abs(lo) * 0.1) }
    let t = niceTicks(lo, hi, maxTicks: maxTicks)
    guard t.count >= 2 else { return (lo, hi) }
    let step = t[1] - t[0]
    return (min(t[0], floor(lo / step) * step), max(t[t.count - 1], ceil(hi / step) * step))
}

/// Shortest decimal label of a tick value ("0", "0.125", "20").
public func tickLabel(_ v: Double) -> String {
    for digits in 0...6 {
        let s = String(format: "%.\(digits)f", v)
        if let back = Double(s), abs(back - v) < 1e-9 * max(1, abs(v)) { return s == "-0" ? "0" : s }
    }
    return String(format: "%g", v)
}

// MARK: - Styles

/// Marker shapes; with the palette they keep series distinguishable without colour.
public enum MarkerShape: String, CaseIterable, Sendable {
    case circle, square, triangleUp, diamond, triangleDown

    /// SVG element for a marker of half-size `r` centred at (x, y).
    func draw(into doc: inout SVGDocument, x: Double, y: Double, r: Double, colour: String) {
        let common: [(String, String)] = [("fill", colour), ("stroke", "#ffffff"), ("stroke-width", "0.8")]
        switch self {
        case .circle:
            doc.element("circle", [("cx", fmt(x)), ("cy", fmt(y)), ("r", fmt(r))] + common)
        case .square:
            let s = r * 0.9
            doc.element("rect", [("x", fmt(x - s)), ("y", fmt(y - s)), ("width", fmt(2 * s)), ("height", fmt(2 * s))] + common)
        case .triangleUp:
            let s = r * 1.2
            doc.element("polygon", [("points", "\(fmt(x)),\(fmt(y - s)) \(fmt(x + s)),\(fmt(y + s * 0.8)) \(fmt(x - s)),\(fmt(y + s * 0.8))")] + common)
        case .triangleDown:
            let s = r * 1.2
            doc.element("polygon", [("points", "\(fmt(x)),\(fmt(y + s)) \(fmt(x + s)),\(fmt(y - s * 0.8)) \(fmt(x - s)),\(fmt(y - s * 0.8))")] + common)
        case .diamond:
            let s = r * 1.25
            doc.element("polygon", [("points", "\(fmt(x)),\(fmt(y - s)) \(fmt(x + s)),\(fmt(y)) \(fmt(x)),\(fmt(y + s)) \(fmt(x - s)),\(fmt(y))")] + common)
        }
    }
}

/// How one series is drawn.
public struct SeriesStyle: Equatable, Sendable {
    public var colour: String
    public var marker: MarkerShape
    /// `stroke-dasharray` of the connecting line; nil = solid.
    public var dash: String?
    public init(colour: String, marker: MarkerShape, dash: String? = nil) {
        self.colour = colour
        self.marker = marker
        self.dash = dash
    }
}

/// Colour-blind-safe colours (Okabe & Ito 2008, without yellow, which is unreadable on white).
public enum Palette {
    public static let okabeIto = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#56B4E9", "#CC79A7", "#000000"]
    public static let neutral = "#666666"

    /// Style of the i-th series: colour cycles over 7, marker over 5 (coprime, so the first 35
    /// series differ in colour or marker), and series past the first 7 get a dashed line.
    public static func style(_ i: Int) -> SeriesStyle {
        let markers = MarkerShape.allCases
        let dashes: [String?] = [nil, "6,3", "2,2", "8,3,2,3"]
        return SeriesStyle(colour: okabeIto[i % okabeIto.count], marker: markers[i % markers.count],
                           dash: dashes[(i / okabeIto.count) % dashes.count])
    }
}

// MARK: - Chart model

public struct DataPoint: Equatable, Sendable {
    public var x: Double
    public var y: Double
    public var yErr: Double?
    public var xErr: Double?
    /// Text drawn next to the point (scatter plots).
    public var label: String?
    public init(x: Double, y: Double, yErr: Double? = nil, xErr: Double? = nil, label: String? = nil) {
        self.x = x; self.y = y; self.yErr = yErr; self.xErr = xErr; self.label = label
    }
}

public struct ChartSeries: Sendable {
    /// Stable identifier; becomes part of the element id (sanitised).
    public var id: String
    /// Legend text.
    public var name: String
    /// `class` attribute of the series group: "series" for data series, "reference" for the teacher etc.
    public var cssClass: String
    public var style: SeriesStyle
    public var points: [DataPoint]
    /// Draw a line through the points (sorted by x).
    public var connect: Bool
    /// Draw a marker at each point (off for long trajectories and guide lines).
    public var markers: Bool
    /// Connect the points in the order given instead of by x (a path over a
    /// parameter, such as β, that need not move monotonically in x).
    public var connectInGivenOrder: Bool
    public init(id: String, name: String, cssClass: String = "series", style: SeriesStyle,
                points: [DataPoint], connect: Bool = true, markers: Bool = true, connectInGivenOrder: Bool = false) {
        self.id = id; self.name = name; self.cssClass = cssClass; self.style = style
        self.points = points; self.connect = connect; self.markers = markers
        self.connectInGivenOrder = connectInGivenOrder
    }
}

/// A horizontal dashed line with a label (chance level, patch area, ...).
public struct ReferenceLine: Sendable {
    public var y: Double
    public var label: String
    /// Label at the left end of the line (else the right end).
    public var labelAtStart: Bool
    public init(y: Double, label: String, labelAtStart: Bool = false) {
        self.y = y
        self.label = label
        self.labelAtStart = labelAtStart
    }
}

public struct Panel: Sendable {
    public var title: String
    public var xLabel: String
    public var yLabel: String
    /// Fixed domains; nil = fit to the data (widened to nice ticks).
    public var xDomain: (Double, Double)?
    public var yDomain: (Double, Double)?
    /// Fixed ticks; nil = nice ticks.
    public var xTicks: [Double]?
    public var yTicks: [Double]?
    public var series: [ChartSeries]
    public var referenceLines: [ReferenceLine]
    /// Horizontal spread (pixels) between series at the same x, so error bars do not hide each other.
    public var dodge: Double
    /// Shown in the plot area when no series has a point.
    public var emptyMessage: String

    public init(title: String, xLabel: String, yLabel: String, xDomain: (Double, Double)? = nil,
                yDomain: (Double, Double)? = nil, xTicks: [Double]? = nil, yTicks: [Double]? = nil,
                series: [ChartSeries], referenceLines: [ReferenceLine] = [], dodge: Double = 0,
                emptyMessage: String = "no data") {
        self.title = title; self.xLabel = xLabel; self.yLabel = yLabel; self.xDomain = xDomain
        self.yDomain = yDomain; self.xTicks = xTicks; self.yTicks = yTicks; self.series = series
        self.referenceLines = referenceLines; self.dodge = dodge; self.emptyMessage = emptyMessage
    }
}

public struct LegendEntry: Sendable {
    public var name: String
    public var colour: String
    public var marker: MarkerShape?
    public var dash: String?
    /// Draw a line sample (line charts); false = marker only (scatter).
    public var line: Bool
    public init(name: String, colour: String, marker: MarkerShape?, dash: String? = nil, line: Bool = true) {
        self.name = name; self.colour = colour; self.marker = marker; self.dash = dash; self.line = line
    }
}

public struct LegendSection: Sendable {
    public var title: String?
    public var entries: [LegendEntry]
    public init(title: String? = nil, entries: [LegendEntry]) {
        self.title = title
        self.entries = entries
    }
}

public struct Figure: Sendable {
    public var title: String
    public var subtitle: String?
    public var panels: [Panel]
    public var legend: [LegendSection]
    public var columns: Int
    public var panelWidth: Double
    public var panelHeight: Double
    public init(title: String, subtitle: String? = nil, panels: [Panel], legend: [LegendSection],
                columns: Int? = nil, panelWidth: Double = 330, panelHeight: Double = 270) {
        self.title = title; self.subtitle = subtitle; self.panels = panels; self.legend = legend
        self.columns = max(1, columns ?? panels.count)
        self.panelWidth = panelWidth; self.panelHeight = panelHeight
    }

    /// Legend entries derived from series (first occurrence of each id, in order).
    public static func legendEntries(for series: [ChartSeries]) -> [LegendEntry] {
        var seen = Set<String>()
        var out: [LegendEntry] = []
        for s in series where seen.insert(s.id).inserted {
            out.append(LegendEntry(name: s.name, colour: s.style.colour, marker: s.markers ? s.style.marker : nil,
                                   dash: s.style.dash, line: s.connect))
        }
        return out
    }
}

/// Turns an arbitrary name into a valid, readable XML id fragment.
public func svgIdentifier(_ s: String) -> String {
    var out = ""
    for u in s.unicodeScalars {
        if (u >= "a" && u <= "z") || (u >= "A" && u <= "Z") || (u >= "0" && u <= "9") || u == "-" || u == "_" {
            out.unicodeScalars.append(u)
        } else if u == "+" {
            out += "plus"
        } else if !out.hasSuffix("-") {
            out += "-"
        }
    }
    while out.hasSuffix("-") { out.removeLast() }
    return out.isEmpty ? "x" : out
}

// MARK: - Rendering

extension Figure {
    /// The figure as an SVG document.
    public func render() -> String {
        let titleSize = 16.0, subtitleSize = 12.0, legendSize = 12.0
        let top = 34.0 + (subtitle == nil ? 0 : 18)
        let rows = (panels.count + columns - 1) / columns
        let usedColumns = min(columns, max(panels.count, 1))

        // Legend width from its longest line.
        var legendWidth = 0.0
        for section in legend {
            if let t = section.title { legendWidth = max(legendWidth, textWidth(t, size: legendSize) + 10) }
            for e in section.entries { legendWidth = max(legendWidth, textWidth(e.name, size: legendSize) + 44) }
        }
        if legendWidth > 0 { legendWidth += 16 }
        let legendHeight = legend.reduce(0.0) { $0 + Double($1.entries.count + ($1.title == nil ? 0 : 1)) * 18 + 10 }

        let width = max(Double(usedColumns) * panelWidth + legendWidth + 20,
                        textWidth(title, size: titleSize) + 40,
                        subtitle.map { textWidth($0, size: subtitleSize) + 32 } ?? 0)
        let height = max(top + Double(max(rows, 1)) * panelHeight + 10, top + legendHeight + 20)
        var doc = SVGDocument(width: width.rounded(.up), height: height.rounded(.up))

        doc.text(title, x: 16, y: 24, size: titleSize, weight: "bold", cssClass: "title")
        if let subtitle { doc.text(subtitle, x: 16, y: 42, size: subtitleSize, fill: "#555555", cssClass: "subtitle") }

        for (i, panel) in panels.enumerated() {
            let px = 10 + Double(i % columns) * panelWidth
            let py = top + Double(i / columns) * panelHeight
            drawPanel(panel, index: i, x: px, y: py, into: &doc)
        }

        if !legend.isEmpty {
            let lx = 10 + Double(usedColumns) * panelWidth + 10
            var ly = top + 30
            doc.open("g", [("class", "legend")])
            for section in legend {
                if let t = section.title {
                    doc.text(t, x: lx, y: ly, size: legendSize, weight: "bold")
                    ly += 18
                }
                for e in section.entries {
                    doc.open("g", [("class", "legend-entry")])
                    let cy = ly - 4
                    if e.line {
                        doc.line(lx, cy, lx + 28, cy, stroke: e.colour, width: 2, dash: e.dash)
                    }
                    e.marker?.draw(into: &doc, x: lx + 14, y: cy, r: 4, colour: e.colour)
                    doc.text(e.name, x: lx + 36, y: ly, size: legendSize)
                    doc.close("g")
                    ly += 18
                }
                ly += 10
            }
            doc.close("g")
        }
        return doc.render()
    }

    private func drawPanel(_ panel: Panel, index: Int, x px: Double, y py: Double, into doc: inout SVGDocument) {
        let left = 62.0, right = 16.0, topPad = 30.0, bottom = 52.0
        let x0 = px + left, x1 = px + panelWidth - right
        let y0 = py + topPad, y1 = py + panelHeight - bottom

        let allPoints = panel.series.flatMap(\.points)
        // Domains: fixed, else fitted to data (including error bars and reference lines).
        let xd: (Double, Double) = panel.xDomain ?? {
            let lo = allPoints.map { $0.x - ($0.xErr ?? 0) }.min() ?? 0
            let hi = allPoints.map { $0.x + ($0.xErr ?? 0) }.max() ?? 1
            return niceDomain(lo, hi)
        }()
        let yd: (Double, Double) = panel.yDomain ?? {
            let ys = allPoints.flatMap { [$0.y - ($0.yErr ?? 0), $0.y + ($0.yErr ?? 0)] } + panel.referenceLines.map(\.y)
            return niceDomain(ys.min() ?? 0, ys.max() ?? 1)
        }()
        // Pad the x range a little so markers at its ends do not sit on the frame.
        let xPad = (xd.1 - xd.0) * 0.04
        let sx = LinearScale(domain: (xd.0 - xPad, xd.1 + xPad), range: (x0, x1))
        let sy = LinearScale(domain: yd, range: (y1, y0))

        let pid = "p\(index)"
        doc.open("g", [("class", "panel"), ("id", "panel-\(pid)")])
        // Data are clipped to the plot area (plus room for markers on the frame).
        doc.open("clipPath", [("id", "clip-\(pid)")])
        doc.element("rect", [("x", fmt(x0 - 8)), ("y", fmt(y0 - 6)), ("width", fmt(x1 - x0 + 16)), ("height", fmt(y1 - y0 + 12))])
        doc.close("clipPath")

        doc.text(panel.title, x: (x0 + x1) / 2, y: py + 18, size: 13, anchor: "middle", weight: "bold", cssClass: "panel-title")

        // Grid and ticks.
        let yTicks = (panel.yTicks ?? niceTicks(yd.0, yd.1)).filter { $0 >= yd.0 - 1e-9 && $0 <= yd.1 + 1e-9 }
        let xTicks = (panel.xTicks ?? niceTicks(xd.0, xd.1)).filter { $0 >= xd.0 - 1e-9 && $0 <= xd.1 + 1e-9 }
        doc.open("g", [("class", "axes")])
        for t in yTicks {
            let y = sy.map(t)
            doc.line(x0, y, x1, y, stroke: "#e6e6e6", width: 1)
            doc.line(x0 - 4, y, x0, y, stroke: "#444444", width: 1)
            doc.text(tickLabel(t), x: x0 - 7, y: y + 4, size: 11, anchor: "end", fill: "#444444")
        }
        // Tick labels too close together (e.g. ρ = 0.125 next to 0.25) alternate rows.
        var lastLabelRight = -Double.infinity
        var staggered = false, anyStaggered = false
        for t in xTicks {
            let x = sx.map(t)
            doc.line(x, y0, x, y1, stroke: "#f0f0f0", width: 1)
            doc.line(x, y1, x, y1 + 4, stroke: "#444444", width: 1)
            let label = tickLabel(t)
            let w = textWidth(label, size: 11)
            staggered = (x - w / 2 < lastLabelRight + 3) ? !staggered : false
            doc.text(label, x: x, y: y1 + 16 + (staggered ? 11 : 0), size: 11, anchor: "middle", fill: "#444444")
            if !staggered { lastLabelRight = x + w / 2 }
            anyStaggered = anyStaggered || staggered
        }
        doc.element("rect", [("x", fmt(x0)), ("y", fmt(y0)), ("width", fmt(x1 - x0)), ("height", fmt(y1 - y0)),
                             ("fill", "none"), ("stroke", "#444444"), ("stroke-width", "1")])
        doc.text(panel.xLabel, x: (x0 + x1) / 2, y: y1 + (anyStaggered ? 44 : 38), size: 12, anchor: "middle", cssClass: "x-label")
        doc.text(panel.yLabel, x: px + 16, y: (y0 + y1) / 2, size: 12, anchor: "middle", rotate: -90, cssClass: "y-label")
        doc.close("g")

        // Reference lines.
        for r in panel.referenceLines where r.y >= yd.0 && r.y <= yd.1 {
            let y = sy.map(r.y)
            doc.open("g", [("class", "reference-line")])
            doc.line(x0, y, x1, y, stroke: "#888888", width: 1.2, dash: "5,4")
            doc.close("g")
        }

        if allPoints.isEmpty {
            doc.text(panel.emptyMessage, x: (x0 + x1) / 2, y: (y0 + y1) / 2, size: 13, anchor: "middle",
                     fill: "#888888", cssClass: "empty")
        }

        // Series: reference series first so data series draw on top.
        let ordered = panel.series.filter { $0.cssClass != "series" } + panel.series.filter { $0.cssClass == "series" }
        let n = panel.series.count
        let step = n > 1 ? min(3, panel.dodge / Double(n - 1)) : 0
        var labels: [(String, Double, Double)] = []
        var allMarkers: [(Double, Double)] = []
        for s in ordered {
            let k = panel.series.firstIndex { $0.id == s.id } ?? 0
            let dx = (Double(k) - Double(n - 1) / 2) * step
            let pts = s.connectInGivenOrder ? s.points : s.points.sorted { $0.x < $1.x }
            doc.open("g", [("class", s.cssClass), ("id", "\(pid)-\(svgIdentifier(s.id))"), ("data-name", s.name),
                           ("clip-path", "url(#clip-\(pid))")])
            if s.connect && pts.count > 1 {
                let d = pts.map { "\(fmt(sx.map($0.x) + dx)),\(fmt(sy.map($0.y)))" }.joined(separator: " ")
                var a: [(String, String)] = [("points", d), ("fill", "none"), ("stroke", s.style.colour),
                                             ("stroke-width", s.cssClass == "series" ? "2" : "1.5"),
                                             ("stroke-linejoin", "round")]
                if let dash = s.style.dash { a.append(("stroke-dasharray", dash)) }
                doc.element("polyline", a)
            }
            for p in pts {
                let cx = sx.map(p.x) + dx, cy = sy.map(p.y)
                if let e = p.yErr, e > 0 {
                    let ya = sy.map(p.y - e), yb = sy.map(p.y + e)
                    doc.line(cx, ya, cx, yb, stroke: s.style.colour, width: 1.2, cssClass: "error-bar")
                    doc.line(cx - 3, ya, cx + 3, ya, stroke: s.style.colour, width: 1.2)
                    doc.line(cx - 3, yb, cx + 3, yb, stroke: s.style.colour, width: 1.2)
                }
                if let e = p.xErr, e > 0 {
                    let xa = sx.map(p.x - e), xb = sx.map(p.x + e)
                    doc.line(xa, cy, xb, cy, stroke: s.style.colour, width: 1.2, cssClass: "error-bar")
                    doc.line(xa, cy - 3, xa, cy + 3, stroke: s.style.colour, width: 1.2)
                    doc.line(xb, cy - 3, xb, cy + 3, stroke: s.style.colour, width: 1.2)
                }
                if s.markers {
                    s.style.marker.draw(into: &doc, x: cx, y: cy, r: s.cssClass == "series" ? 4 : 3.2, colour: s.style.colour)
                    allMarkers.append((cx, cy))
                }
                if let label = p.label { labels.append((label, cx, cy)) }
            }
            doc.close("g")
        }
        // Labels are drawn last, unclipped, so no curve or marker hides them.
        for r in panel.referenceLines where r.y >= yd.0 && r.y <= yd.1 {
            doc.text(r.label, x: r.labelAtStart ? x0 + 4 : x1 - 4, y: sy.map(r.y) - 4, size: 10.5,
                     anchor: r.labelAtStart ? "start" : "end", fill: "#555555", halo: true, cssClass: "reference-label")
        }
        let markerBoxes = allMarkers.map { Box(x: $0.0 - 5, y: $0.1 - 5, w: 10, h: 10) }
        for l in placeLabels(labels, markers: markerBoxes, bounds: Box(x: x0, y: y0, w: x1 - x0, h: y1 - y0), size: 10.5) {
            doc.text(l.text, x: l.x, y: l.y, size: 10.5, anchor: l.anchor, fill: "#333333", halo: true, cssClass: "point-label")
        }
        doc.close("g")
    }
}


// MARK: - Label placement

struct Box {
    var x, y, w, h: Double
    func overlap(_ o: Box) -> Double {
        max(0, min(x + w, o.x + o.w) - max(x, o.x)) * max(0, min(y + h, o.y + o.h) - max(y, o.y))
    }
    func outside(_ b: Box) -> Double {
        w * h - overlap(b)
    }
}

struct PlacedLabel {
    var text: String
    var x, y: Double
    var anchor: String
}

/// Greedy placement of point labels: for each label, in order, the first of a few positions
/// around its point that overlaps no label placed so far, no marker and stays inside `bounds`;
/// failing that, the position with the least overlap.
func placeLabels(_ labels: [(String, Double, Double)], markers: [Box], bounds: Box, size: Double) -> [PlacedLabel] {
    let candidates: [(Double, Double, String)] = [(8, -6, "start"), (8, 13, "start"), (-8, -6, "end"), (-8, 13, "end"),
                                                  (0, -10, "middle"), (0, 20, "middle")]
    var placed: [Box] = []
    var out: [PlacedLabel] = []
    for (text, px, py) in labels {
        let w = textWidth(text, size: size) * 0.92, h = size
        var best: (cost: Double, label: PlacedLabel, box: Box)?
        for (dx, dy, anchor) in candidates {
            let x = px + dx, y = py + dy
            let left = anchor == "start" ? x : anchor == "end" ? x - w : x - w / 2
            let box = Box(x: left, y: y - h * 0.8, w: w, h: h)
            var cost = box.outside(bounds) * 4
            for b in placed { cost += box.overlap(b) }
            for m in markers { cost += box.overlap(m) }
            if best == nil || cost < best!.cost {
                best = (cost, PlacedLabel(text: text, x: x, y: y, anchor: anchor), box)
            }
            if cost == 0 { break }
        }
        if let best {
            placed.append(best.box)
            out.append(best.label)
        }
    }
    return out
}

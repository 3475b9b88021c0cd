import Foundation

/// A failed `python3` call in a test: the interop and cross-check tests must
/// fail, never pass silently, on a machine without python3 or numpy.
public struct PythonError: Error, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}

/// Runs `python3 -c script args...` and returns its stdout; throws with
/// stderr when python3 cannot start or exits non-zero (naming numpy when
/// that is what is missing). Shared by the test targets that cross-check
/// against numpy.
@discardableResult
public func runPython3(_ script: String, _ args: [String] = []) throws -> String {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = ["python3", "-c", script] + args
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    do { try p.run() } catch {
        throw PythonError(message: "python3 with numpy is required for this test (cannot start python3: \(error))")
    }
    let o = out.fileHandleForReading.readDataToEndOfFile()
    let e = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    let errText = String(decoding: e, as: UTF8.self)
    if p.terminationStatus != 0 {
        if errText.contains("No module named 'numpy'") || p.terminationStatus == 127 {
            throw PythonError(message: "numpy is required for this test (pip install numpy): \(errText)")
        }
        throw PythonError(message: "python3 failed (\(p.terminationStatus)): \(errText)")
    }
    return String(decoding: o, as: UTF8.self)
}

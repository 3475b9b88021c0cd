#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The text of the current `errno`, for error messages.
func errnoText() -> String { String(cString: strerror(errno)) }

/// Writes `bytes` to `path` atomically: the bytes go to a temporary file in
/// the same folder, which is fsync'ed and then renamed over `path`. A reader
/// therefore sees either the old file or the complete new one, and a writer
/// that fails or is interrupted never leaves a file at `path`.
public func atomicWrite(_ bytes: [UInt8], to path: String) throws {
    let f = try AtomicFile(path: path)
    try bytes.withUnsafeBytes { try f.write($0) }
    try f.commit()
}

/// An output file that appears at its final path only once complete
/// (temporary file in the same folder + fsync + rename). If `commit()` is
/// never reached (error, early exit) the temporary file is removed.
final class AtomicFile {
    let finalPath: String
    let tempPath: String
    private var fd: Int32
    /// Bytes written so far (the offset of the next `write`).
    private(set) var offset: UInt64 = 0
    private var finished = false

    init(path: String) throws {
        guard !path.isEmpty else { throw TensorIOError(io: "empty output path") }
        finalPath = path
        let slash = path.lastIndex(of: "/")
        let dir = slash.map { String(path[..<$0]) } ?? "."
        let base = slash.map { String(path[path.index(after: $0)...]) } ?? path
        guard !base.isEmpty else { throw TensorIOError(io: "\(path): output path names a folder, not a file") }
        let dirPrefix = slash == nil ? "" : (dir.isEmpty ? "/" : dir + "/")
        // Unique per process and attempt; O_EXCL guards against collisions.
        var attempt = 0
        while true {
            var ts = timespec()
            clock_gettime(CLOCK_REALTIME, &ts)
            let candidate = "\(dirPrefix).\(base).tmp-\(getpid())-\(ts.tv_nsec)-\(attempt)"
            let d = open(candidate, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
            if d >= 0 { fd = d; tempPath = candidate; return }
            if errno != EEXIST || attempt > 100 {
                throw TensorIOError(io: "\(path): cannot create a temporary file in '\(dir)': \(errnoText())")
            }
            attempt += 1
        }
    }

    deinit { if !finished { abort() } }

    /// Appends the bytes (handles short writes and EINTR).
    func write(_ buf: UnsafeRawBufferPointer) throws {
        guard var p = buf.baseAddress else { return }
        var left = buf.count
        while left > 0 {
            let n = Glibc_write(fd, p, min(left, 1 << 30))
            if n < 0 {
                if errno == EINTR { continue }
                throw TensorIOError(io: "\(finalPath): write failed: \(errnoText())")
            }
            p += n; left -= n; offset += UInt64(n)
        }
    }

    func write(_ bytes: [UInt8]) throws { try bytes.withUnsafeBytes { try write($0) } }

    /// Overwrites already written bytes at `at` (to patch a header once sizes are known).
    func patch(_ bytes: [UInt8], at: UInt64) throws {
        precondition(at + UInt64(bytes.count) <= offset)
        try bytes.withUnsafeBytes { buf in
            var done = 0
            while done < buf.count {
                let n = pwrite(fd, buf.baseAddress! + done, buf.count - done, off_t(at) + off_t(done))
                if n < 0 {
                    if errno == EINTR { continue }
                    throw TensorIOError(io: "\(finalPath): write failed: \(errnoText())")
                }
                done += n
            }
        }
    }

    /// Flushes to disk and moves the file to its final path.
    func commit() throws {
        precondition(!finished)
        if fsync(fd) != 0 {
            let e = errnoText(); abort()
            throw TensorIOError(io: "\(finalPath): fsync failed: \(e)")
        }
        let c = close(fd)
        fd = -1
        if c != 0 {
            let e = errnoText(); abort()
            throw TensorIOError(io: "\(finalPath): close failed: \(e)")
        }
        if rename(tempPath, finalPath) != 0 {
            let e = errnoText(); abort()
            throw TensorIOError(io: "\(finalPath): cannot move the finished file into place: \(e)")
        }
        finished = true
        // Make the rename itself durable; failure here does not undo the write.
        let slash = finalPath.lastIndex(of: "/")
        let dir = slash.map { String(finalPath[..<$0]) } ?? "."
        let dfd = open(dir.isEmpty ? "/" : dir, O_RDONLY | O_CLOEXEC)
        if dfd >= 0 { _ = fsync(dfd); _ = close(dfd) }
    }

    /// Drops the temporary file; nothing appears at the final path.
    func abort() {
        if fd >= 0 { _ = close(fd); fd = -1 }
        _ = unlink(tempPath)
        finished = true
    }
}

@inline(__always)
private func Glibc_write(_ fd: Int32, _ p: UnsafeRawPointer, _ n: Int) -> Int {
    #if canImport(Glibc)
    return Glibc.write(fd, p, n)
    #elseif canImport(Musl)
    return Musl.write(fd, p, n)
    #else
    return Darwin.write(fd, p, n)
    #endif
}

/// A file opened for positioned reads, with every read checked against the
/// file's size so a truncated file gives an error instead of garbage.
final class ReadFile {
    let path: String
    let size: UInt64
    private let fd: Int32

    init(path: String) throws {
        self.path = path
        let d = open(path, O_RDONLY | O_CLOEXEC)
        guard d >= 0 else { throw TensorIOError(io: "\(path): cannot open: \(errnoText())") }
        var st = stat()
        guard fstat(d, &st) == 0 else {
            let e = errnoText(); _ = close(d)
            throw TensorIOError(io: "\(path): cannot stat: \(e)")
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            _ = close(d)
            throw TensorIOError(io: "\(path): not a regular file")
        }
        fd = d
        size = UInt64(st.st_size)
    }

    deinit { _ = close(fd) }

    /// Fills `buf` from `offset`; `what` names the structure for the error
    /// message if the file ends too early.
    func read(at offset: UInt64, into buf: UnsafeMutableRawBufferPointer, what: @autoclosure () -> String) throws {
        guard buf.count > 0 else { return }
        guard offset <= size, UInt64(buf.count) <= size - offset else {
            throw TensorIOError("file truncated: \(what()) extends past the end of the file")
        }
        var done = 0
        while done < buf.count {
            let n = pread(fd, buf.baseAddress! + done, buf.count - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                throw TensorIOError(io: "read failed: \(errnoText())")
            }
            if n == 0 { throw TensorIOError("file truncated while reading \(what())") }
            done += n
        }
    }

    func bytes(at offset: UInt64, count: Int, what: @autoclosure () -> String) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        try out.withUnsafeMutableBytes { try read(at: offset, into: $0, what: what()) }
        return out
    }
}

import Testing
@testable import Subspace

import Testing
@testable import Distill

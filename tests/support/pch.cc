// The object the tests' precompiled gtest/gmock headers are built with (tests/CMakeLists.txt).

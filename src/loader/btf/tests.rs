//! Unit tests of parsing, queries and encoding.

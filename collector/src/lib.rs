//! vigil collector library.

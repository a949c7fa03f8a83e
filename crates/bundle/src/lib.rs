//! bundle: placeholder, being written.

//! Guest images built into the binary (the demo guest `kemu` boots with no arguments).

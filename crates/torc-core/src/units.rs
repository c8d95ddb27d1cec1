//! Memory sizes and ISO 8601 durations. (Being written.)

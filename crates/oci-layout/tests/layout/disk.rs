//! What the layout leaves on disk.

//! Loss and delay on the veth link (filled in step 5).

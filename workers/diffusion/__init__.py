"""What text-to-image and text-to-video share: loading, step callbacks, size checks, the handlers' common parts."""

"""The dump format's reader: headers, slots, directory records, the classification of a dump, and `dumpbed show`."""

"""Performance measurement (torch only): step time of feedback rules against bp (:mod:`.step_time`,
``bioplastic bench``) and the counted FLOP and byte cost model (:mod:`.costmodel`)."""

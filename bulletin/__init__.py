"""Analysis over the store (分析): historical import (`importer`, `history`), the 热点快报
(`hotspots`, `surges`, `rates`, `report`, `render`) and the 每日值班小结 (`daily`).

Plain Python over the store's tables: no Kafka here. Every text shown to people goes through
`hotline.masking.mask_pii`.
"""

"""What every input filter logs (its module, not the evaluation step): the share of clean test
rows it flags (false alarms) and of triggered ones (detection), columns of the results table."""
from w2s.metrics import MetricSpec, register_metric

FLAG_RATES = (register_metric(MetricSpec("false_alarm_rate", "false alarms", "clean")),
              register_metric(MetricSpec("detection_rate", "detection", "triggered")))

"""Controlled vocabularies of the catalog, with their Chinese labels (the guide's terms)."""

from __future__ import annotations

from typing import Literal

CatalogKind = Literal["basic", "theme", "department"]
ShareType = Literal["unconditional", "conditional", "none"]
OpenType = Literal["open", "conditional", "closed"]
ShareMode = Literal["verify", "query", "api", "bulk"]
UpdateCycle = Literal["realtime", "daily", "weekly", "monthly", "quarterly", "yearly"]
FieldType = Literal["string", "integer", "number", "boolean", "date", "datetime"]
Sensitivity = Literal["public", "internal", "personal", "sensitive"]
Check = Literal["citizen_id", "uscc", "mobile"]
Status = Literal["draft", "published", "retired"]

KIND_DIGIT = {"basic": "1", "theme": "2", "department": "3"}

LABELS: dict[str, dict[str, str]] = {
    "kind": {"basic": "基础信息资源目录", "theme": "主题信息资源目录", "department": "部门信息资源目录"},
    "share_type": {"unconditional": "无条件共享", "conditional": "有条件共享", "none": "不予共享"},
    "open_type": {"open": "无条件开放", "conditional": "有条件开放", "closed": "不予开放"},
    "share_mode": {"verify": "比对验证", "query": "检索查询", "api": "接口访问", "bulk": "批量复制"},
    "update_cycle": {
        "realtime": "实时", "daily": "每日", "weekly": "每周", "monthly": "每月",
        "quarterly": "每季度", "yearly": "每年",
    },
    "field_type": {
        "string": "字符型", "integer": "整数型", "number": "数值型", "boolean": "布尔型",
        "date": "日期型", "datetime": "日期时间型",
    },
    # Sensitivity scale after GB/T 43697-2024 (general / important data) and PIPL art. 28.
    "sensitivity": {
        "public": "公开（可向社会开放）",
        "internal": "内部（政务内部共享）",
        "personal": "个人信息（PIPL 第4条）",
        "sensitive": "敏感个人信息（PIPL 第28条）",
    },
    "status": {"draft": "草稿", "published": "已发布", "retired": "已停用"},
    "check": {"citizen_id": "公民身份号码（GB 11643）", "uscc": "统一社会信用代码（GB 32100）", "mobile": "手机号码"},
}

# The guide's basic catalogs (类 1) and theme areas (类 2), with their 项 numbers.
BASIC_CATALOGS = {
    "01": "人口基础信息资源目录",
    "02": "法人单位基础信息资源目录",
    "03": "自然资源和空间地理基础信息资源目录",
    "04": "社会信用基础信息资源目录",
    "05": "电子证照基础信息资源目录",
}
THEME_CATALOGS = {
    "01": "公共服务", "02": "健康保障", "03": "社会保障", "04": "食品药品安全", "05": "安全生产",
    "06": "价格监管", "07": "能源安全", "08": "信用体系", "09": "城乡建设", "10": "社区治理",
    "11": "生态环保", "12": "应急保障",
}

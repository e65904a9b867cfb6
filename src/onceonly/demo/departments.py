"""The departments of 示例市: the data resources bureau that runs the platform and the 23
city departments connected to it (as in the seed city, 与23家市直部门实现了数据共享).
Their codes are fixed — not drawn from the seed — so 公安局 is the same organization in every
demo: registration authority 1 (机构编制), kind 1 机关 / 2 事业单位 / 3 群团, region 341800."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from onceonly.accounts.actor import Actor
from onceonly.catalog.orgs import add_org
from onceonly.catalog.schemas import OrgIn
from onceonly.demo.world import CITY, CITY_CODE, Org
from onceonly.kit.identifiers import make_uscc


@dataclass(frozen=True)
class Department:
    key: str  # short handle used by the resource definitions
    name: str
    short_name: str
    kind: str = "1"  # USCC 机构类别: 1 机关, 2 事业单位, 3 群团组织
    parent: str | None = None


PLATFORM = "dsj"
DEPARTMENTS: tuple[Department, ...] = (
    Department(PLATFORM, f"{CITY}数据资源管理局", "数据资源局"),
    Department("gaj", f"{CITY}公安局", "公安局"),
    Department("mzj", f"{CITY}民政局", "民政局"),
    Department("rsj", f"{CITY}人力资源和社会保障局", "人社局"),
    Department("scjgj", f"{CITY}市场监督管理局", "市场监管局"),
    Department("swj", f"国家税务总局{CITY}税务局", "税务局"),
    Department("zjj", f"{CITY}住房和城乡建设局", "住建局"),
    Department("wjw", f"{CITY}卫生健康委员会", "卫健委"),
    Department("jtj", f"{CITY}教育体育局", "教体局"),
    Department("sfj", f"{CITY}司法局", "司法局"),
    Department("sthjj", f"{CITY}生态环境局", "生态环境局"),
    Department("gjj", f"{CITY}住房公积金管理中心", "公积金中心", kind="2"),
    Department("zrzyj", f"{CITY}自然资源和规划局", "自然资源局"),
    Department("bdc", f"{CITY}不动产登记中心", "不动产登记中心", kind="2", parent="zrzyj"),
    Department("tjj", f"{CITY}统计局", "统计局"),
    Department("jtysj", f"{CITY}交通运输局", "交通运输局"),
    Department("nyncj", f"{CITY}农业农村局", "农业农村局"),
    Department("wlj", f"{CITY}文化和旅游局", "文旅局"),
    Department("yjglj", f"{CITY}应急管理局", "应急管理局"),
    Department("ybj", f"{CITY}医疗保障局", "医保局"),
    Department("czj", f"{CITY}财政局", "财政局"),
    Department("fgw", f"{CITY}发展和改革委员会", "发改委"),
    Department("tyjrj", f"{CITY}退役军人事务局", "退役军人局"),
    Department("cl", f"{CITY}残疾人联合会", "残联", kind="3"),
)
BY_KEY = {d.key: d for d in DEPARTMENTS}


def department_code(index: int, dept: Department) -> str:
    """A valid USCC: 1 + kind + 341800 + an 8-digit organization body fixed per department."""
    return make_uscc("1", dept.kind, CITY_CODE, f"0032{4510 + 7 * index:04d}")


def create_departments(session: Session, actor: Actor) -> dict[str, Org]:
    """Register every department (each gets its department catalog 3NN); returns them by key."""
    out: dict[str, Org] = {}
    for index, dept in enumerate(DEPARTMENTS):
        code = department_code(index, dept)
        parent = out[dept.parent].code if dept.parent else None
        org = add_org(session, actor, OrgIn(code=code, name=dept.name, short_name=dept.short_name,
                                            parent=parent, region=CITY_CODE))
        out[dept.key] = Org(key=dept.key, code=org.code, name=org.name, short_name=dept.short_name,
                            catalog=f"3{org.number:02d}")  # add_org made its department catalog
    return out


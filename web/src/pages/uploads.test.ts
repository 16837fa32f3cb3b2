import { describe, expect, it } from "vitest";
import { errorsCsv } from "./Uploads";

describe("errorsCsv", () => {
  it("quotes cells with commas, quotes and line breaks, and keeps empty cells empty", () => {
    const csv = errorsCsv([
      { seq: 2, where: "images[2]", url: "s3://b/a,b.png", error: 'cannot stat "a": not found' },
      { seq: null, where: "batch 1", url: null, error: "line one\nline two" },
    ]);
    expect(csv).toBe(
      'seq,where,url,error\n2,images[2],"s3://b/a,b.png","cannot stat ""a"": not found"\n,batch 1,,"line one\nline two"\n',
    );
  });
});

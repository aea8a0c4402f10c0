‰NCR

